"""Train: configure a run, start it in the background, watch it live, stop it, compare past runs."""

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from fer_core.inference import available_devices
from fer_core.models.networks import ARCHITECTURES
from fer_core.training.config import OPTIMIZERS, SCHEDULERS
from fer_core.training.recipes import RECIPES, get_recipe
from fer_core.training.runs import BEST_FILE, list_runs, recipe_of, resumable
from ui import charts, state, training
from ui.text import code, md
from ui.training import TrainingManager, recipe_from_form, stalled_at_chance, status_of

st.title("🏋️ Train")


@st.cache_resource
def manager() -> TrainingManager:
    """One manager per server: at most one training run at a time, shared by every session."""
    return TrainingManager()


def session_id() -> str:
    ctx = st.runtime.scriptrunner.get_script_run_ctx() if st.runtime.exists() else None
    return ctx.session_id if ctx else "local"


# The form's widgets, keyed: choosing a recipe writes every one of them (see apply_recipe).
FIELD = "train_form."
CPU_SUBSET = 6000  # a default that keeps a CPU run to minutes; stated on screen where it applies


def has_gpu() -> bool:
    return len(available_devices()) > 2


@st.cache_data(show_spinner=False)
def parameter_counts() -> dict[str, int]:
    """Architecture -> parameters at its defaults, counted from the model itself."""
    from fer_core.models.networks import parameter_count

    return {arch: parameter_count(arch) for arch in ARCHITECTURES}


def arch_help(recipe) -> str:
    counts = parameter_counts()
    lines = []
    for arch, spec in ARCHITECTURES.items():
        line = f"- **{arch}**: {spec.description}, {counts[arch] / 1e6:.2f}M parameters"
        if arch == recipe.arch and recipe.arch_kwargs:
            from fer_core.models.networks import parameter_count

            built = parameter_count(arch, **recipe.arch_kwargs)
            options = ", ".join(f"{k}={v}" for k, v in recipe.arch_kwargs.items())
            line += f" ({built / 1e6:.2f}M with this recipe's {options})"
        lines.append(line)
    return "\n".join(lines)


def recipe_values(recipe, n_train: int) -> dict:
    """Every field of the form as the recipe sets it. Recipes train on all of Training and select
    on PublicTest; only a machine without a GPU starts from a subset (said under the form)."""
    cfg, a = recipe.config, recipe.config.augment
    return {
        "arch": recipe.arch,
        "epochs": int(cfg.epochs),
        "batch": int(cfg.batch_size),
        "lr": float(cfg.lr),
        "optimizer": cfg.optimizer,
        "scheduler": cfg.scheduler,
        "weight_decay": float(cfg.weight_decay),
        "smoothing": float(cfg.label_smoothing),
        "flip": a.hflip > 0,
        "rotation": int(a.rotation),
        "translate": float(a.translate),
        "erasing": float(a.erasing),
        "crop": a.crop_scale != (1.0, 1.0),
        "jitter": float(max(a.brightness, a.contrast)),
        "noise": float(a.noise),
        "mixup": float(cfg.mixup_alpha),
        "weighting": recipe.class_weighting,
        "patience": int(cfg.early_stopping),
        "limit": n_train if has_gpu() else min(n_train, CPU_SUBSET),
        "val": "public_test",
    }


def apply_recipe(n_train: int) -> None:
    recipe = get_recipe(st.session_state[FIELD + "recipe"])
    for name, value in recipe_values(recipe, n_train).items():
        st.session_state[FIELD + name] = value


def config_form(n_train: int) -> tuple[str, object, object] | None:
    """(action, recipe, selection) when Estimate or Start is pressed, else None."""
    if FIELD + "recipe" not in st.session_state:
        st.session_state[FIELD + "recipe"] = next(iter(RECIPES))
        apply_recipe(n_train)
    if st.session_state.get(FIELD + "limit", 0) > n_train:  # another, smaller dataset since
        st.session_state[FIELD + "limit"] = n_train
    preset = st.selectbox(
        "Start from recipe",
        list(RECIPES),
        key=FIELD + "recipe",
        format_func=lambda k: f"{k}: {RECIPES[k].description}",
        on_change=apply_recipe,
        args=(n_train,),
        help="Sets every field below to the recipe's values",
    )
    recipe = get_recipe(preset)
    with st.form("train_config"):
        form = form_fields(recipe, n_train)
        if not has_gpu() and n_train > CPU_SUBSET:
            st.caption(
                f"No GPU on this server: the training subset starts at {CPU_SUBSET:,} of "
                f"{n_train:,} images so that a run takes minutes, not hours. Every other value "
                f"is the recipe's ({recipe.config.epochs} epochs); raise the subset for the best "
                "model."
            )
        buttons = st.container(horizontal=True)
        started = buttons.form_submit_button("▶ Start training", type="primary")
        estimate = buttons.form_submit_button(
            "⏱ Estimate time", help="Times a few training batches of these settings here"
        )
    if not (started or estimate):
        return None
    chosen, selection = recipe_from_form(recipe, form, recipe_values(recipe, n_train), n_train)
    return ("start" if started else "estimate"), chosen, selection


def form_fields(recipe, n_train: int) -> dict:
    """The form's widgets (keyed, so a recipe can set them); their values by field name."""

    def key(name: str) -> str:
        return FIELD + name

    f: dict = {}
    c1, c2, c3, c4 = st.columns(4)
    f["arch"] = c1.selectbox(
        "Architecture", list(ARCHITECTURES), key=key("arch"), help=arch_help(recipe)
    )
    f["epochs"] = c2.number_input("Epochs", 1, 500, key=key("epochs"))
    f["batch"] = c3.select_slider("Batch size", [16, 32, 64, 128, 256, 512], key=key("batch"))
    f["lr"] = c4.number_input("Learning rate", 1e-6, 1.0, key=key("lr"), format="%.5f")
    c1, c2, c3, c4 = st.columns(4)
    f["optimizer"] = c1.selectbox("Optimizer", OPTIMIZERS, key=key("optimizer"))
    f["scheduler"] = c2.selectbox("Scheduler", SCHEDULERS, key=key("scheduler"))
    f["weight_decay"] = c3.number_input(
        "Weight decay", 0.0, 1.0, key=key("weight_decay"), format="%.5f"
    )
    f["smoothing"] = c4.slider("Label smoothing", 0.0, 0.3, step=0.05, key=key("smoothing"))
    st.markdown("**Augmentation** (batched, on the training device)")
    c1, c2, c3, c4 = st.columns(4)
    f["flip"] = c1.checkbox("Horizontal flip", key=key("flip"))
    f["rotation"] = c2.slider("Rotation (°)", 0, 30, key=key("rotation"))
    f["translate"] = c3.slider("Translation", 0.0, 0.2, step=0.02, key=key("translate"))
    f["erasing"] = c4.slider("Random erasing p", 0.0, 1.0, step=0.1, key=key("erasing"))
    c1, c2, c3, c4 = st.columns(4)
    f["crop"] = c1.checkbox("Random resized crop", key=key("crop"))
    f["jitter"] = c2.slider("Brightness / contrast", 0.0, 0.4, step=0.05, key=key("jitter"))
    f["noise"] = c3.slider("Gaussian noise σ", 0.0, 0.1, step=0.01, key=key("noise"))
    f["mixup"] = c4.slider("Mixup α (0 = off)", 0.0, 1.0, step=0.1, key=key("mixup"))
    st.markdown("**Imbalance, stopping, data**")
    c1, c2, c3, c4 = st.columns(4)
    f["weighting"] = c1.selectbox(
        "Class weighting", ["none", "inverse", "effective"], key=key("weighting")
    )
    f["patience"] = c2.number_input(
        "Early stopping patience (0 = off)", 0, 100, key=key("patience")
    )
    f["limit"] = c3.number_input(
        "Training subset (images)",
        100,
        n_train,
        step=500,
        key=key("limit"),
        help="A stratified subset of exactly this many images keeps CPU runs short; use all "
        "for the best model",
    )
    f["val"] = c4.selectbox(
        "Validation",
        ["public_test", "0.1 of train"],
        key=key("val"),
        format_func=lambda v: "PublicTest" if v == "public_test" else "10% of Training",
        help="Models are selected on PublicTest or a split of Training, never on PrivateTest",
    )
    f["device"] = st.selectbox("Device", available_devices())
    return f


def show_estimate(data, recipe, selection) -> None:
    """The run's time on this machine, from a few timed batches; a warning when it is long."""
    from fer_core.training.estimate import estimate_run

    busy = manager().snapshot().active
    with st.spinner("Timing a few training batches…"):
        est = estimate_run(data, recipe, selection)
    text = (
        f"About **{duration(est.total_s)}** on `{est.device}`: {est.epochs} epochs of "
        f"{est.batches_per_epoch:,} batches at {est.seconds_per_batch:.2f} s each, plus "
        f"{duration(est.validation_s)} of validation per epoch."
    )
    if busy:
        text += " Another run is training on this server, so this is slower than it will be."
    if est.total_s > training.LONG_RUN_S:
        st.warning(
            text + " That is long: fewer epochs, a smaller subset or a GPU would shorten it.",
            icon="⏳",
        )
    else:
        st.info(text, icon="⏱")


def duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def stop_button(run, column, theirs: bool) -> None:
    """Stop; a run another session started asks for a yes first (it is their work)."""
    if not theirs:
        if column.button("⏹ Stop", help="Finishes the current batch; finished epochs are kept"):
            manager().stop()
            st.rerun(scope="fragment")
        return
    if st.session_state.get(state.STOP_CONFIRM) != run.run_dir:
        if column.button("⏹ Stop", help="Another session started this run: asks first"):
            st.session_state[state.STOP_CONFIRM] = run.run_dir
            st.rerun(scope="fragment")
        return
    st.warning("Stop the run another session started? Its finished epochs are kept.")
    yes, no = st.columns([1, 5])
    if yes.button("Yes, stop it", type="primary"):
        st.session_state.pop(state.STOP_CONFIRM, None)
        manager().stop()
        st.rerun(scope="fragment")
    if no.button("Cancel"):
        st.session_state.pop(state.STOP_CONFIRM, None)
        st.rerun(scope="fragment")


def live_view(polling: bool) -> None:
    """The live run; refreshed every second only while one is active (see below)."""
    run = manager().snapshot()
    if polling and not run.active:
        st.rerun()  # the run just ended: once more in full, so Past runs shows it, then stop
    if run.status == "idle":
        st.caption("No run yet on this server.")
        return
    head, button = st.columns([4, 1])
    icon = {
        "running": "🟢",
        "starting": "🟡",
        "stopping": "🟠",
        "finished": "✅",
        "stopped": "⏹️",
        "failed": "❌",
    }.get(run.status, "")
    head.markdown(
        f"{icon} **{run.status.title()}**: {code(run.arch)} in {code(Path(run.run_dir).name)}"
    )
    theirs = run.owner != session_id()
    if run.active and theirs:
        since = time.strftime("%H:%M", time.localtime(run.started))
        head.caption(
            f"Started at {since} by another session (another user or tab, or this one before a "
            "reload): Stop ends it for everyone watching."
        )
    if run.active:
        stop_button(run, button, theirs)
    if run.active and run.batches:
        done = ((run.epoch - 1) * run.batches + run.batch) / max(1, run.epochs * run.batches)
        eta = f"{run.eta_s / 60:.1f} min" if run.eta_s >= 60 else f"{run.eta_s:.0f} s"
        st.progress(
            min(1.0, done),
            text=f"Epoch {run.epoch}/{run.epochs}, batch {run.batch}/"
            f"{run.batches} · loss {run.loss:.3f} · {run.images_per_s:,.0f} img/s · ETA {eta}",
        )
    elif run.active:
        st.progress(0.0, text="Preparing data and model…")
    if run.message:
        (st.error if run.status == "failed" else st.success)(md(run.message))
    if run.history:
        last = run.history[-1]
        best = max(run.history, key=lambda h: h["val_acc"])
        c = st.columns(4)
        c[0].metric("Epochs done", f"{len(run.history)}/{run.epochs}")
        c[1].metric("Validation accuracy", f"{last['val_acc']:.1%}")
        c[2].metric("Best so far", f"{best['val_acc']:.1%}", help=f"epoch {best['epoch']}")
        f1 = last.get("val_macro_f1")
        c[3].metric("Validation macro-F1", "–" if f1 is None else f"{f1:.3f}")
        if stalled_at_chance(run):
            st.warning(
                f"After {len(run.history)} epochs validation accuracy is no better than always "
                f"answering the most common class ({run.chance:.1%}): these settings are not "
                "learning. Try another learning rate (often lower), or more training images.",
                icon="⚠️",
            )
        st.plotly_chart(charts.history(run.history), width="stretch", key="live_history")


data, error = state.get_data()
if data is None:
    st.info(md(error) if error else "Training needs FER2013: add it on the Data page first.")
    st.page_link("app_pages/data.py", label="Add FER2013", icon="📊")
else:
    n_train = int(data.split_mask("train").sum())
    with st.expander("New run", expanded=not manager().snapshot().active):
        chosen = config_form(max(n_train, 100))
    if chosen is not None:
        action, recipe, selection = chosen
        if action == "estimate":
            show_estimate(data, recipe, selection)
        else:
            ok, message = manager().start(data, recipe, selection, state.runs_dir(), session_id())
            (st.success if ok else st.warning)(md(message))

st.subheader("Live run")
# Poll only while a run is active: every polling session costs the server a script run per
# second, which adds up with several sessions on a small machine.
polling = manager().snapshot().active
st.fragment(run_every=1.0 if polling else None)(live_view)(polling)

st.subheader("Past runs")
runs = list_runs(state.runs_dir())
live = manager().snapshot()


if not runs:
    st.caption("Finished and stopped runs appear here, with their best checkpoints.")
else:
    table = pd.DataFrame(
        [
            {
                "run": r.name,
                "architecture": r.arch,
                "status": status_of(r.status, str(r.path), live),
                "epochs": f"{r.epochs_done}/{r.epochs}",
                "best val acc": r.best_val_acc,
                "best val macro-F1": r.best_val_macro_f1,
                "train images": r.record.get("n_train"),
                "validation": r.record.get("val"),
            }
            for r in runs
        ]
    )
    st.dataframe(
        table,
        width="stretch",
        hide_index=True,
        column_config={
            "best val acc": st.column_config.ProgressColumn(
                format="percent", min_value=0, max_value=1
            )
        },
    )
    chosen_runs = st.multiselect(
        "Compare", [r.name for r in runs], default=[r.name for r in runs[:3]]
    )
    if chosen_runs:
        by_name = {r.name: r.history for r in runs if r.name in chosen_runs and r.history}
        metric = st.segmented_control(
            "Metric", ["val_acc", "val_macro_f1", "val_loss", "train_loss"], default="val_acc"
        )
        st.plotly_chart(charts.compare_runs(by_name, metric or "val_acc"), width="stretch")
    resume_choices = {
        f"{r.name} ({r.epochs_done}/{r.epochs} epochs)": r for r in runs if resumable(r)
    }
    if resume_choices and not live.active:
        c1, c2 = st.columns([3, 1])
        pick = c1.selectbox(
            "Resume a stopped or interrupted run from its last finished epoch", list(resume_choices)
        )
        if c2.button("▶ Resume"):
            run = resume_choices[pick]
            trained_on = run.record.get("data")
            if data is None or trained_on != data.source:
                st.warning(
                    f"{md(run.name)} was trained on {code(Path(str(trained_on)).name)}: make "
                    "that the active dataset on the Data page to resume it."
                )
            else:
                recipe, selection = recipe_of(run)
                ok, message = manager().start(
                    data, recipe, selection, state.runs_dir(), session_id(), resume_dir=run.path
                )
                if ok:
                    st.rerun()  # in full, so that the live view polls the resumed run
                st.warning(md(message))
    usable = [r for r in runs if (r.path / BEST_FILE).exists()]
    if usable:
        c1, c2 = st.columns([3, 1])
        pick = c1.selectbox(
            "Use a run's best checkpoint as the active model", [r.name for r in usable]
        )
        if c2.button("Make active"):
            state.set_model_path(str(next(r for r in usable if r.name == pick).path / BEST_FILE))
            # The sidebar is drawn before this page: rerun so it shows the new model now.
            st.session_state[state.TRAIN_NOTICE] = f"{md(pick)} is now the active model."
            st.rerun()
        notice = st.session_state.pop(state.TRAIN_NOTICE, None)
        if notice:
            st.success(notice + " Predict and Evaluate use it from now on.", icon="✅")
