"""The Evaluate page in a real Chromium: clicking a confusion-matrix cell shows that cell's
mistakes, outlines it and sets the dropdowns; a face opens large with its saliency."""

from __future__ import annotations

import time

import pytest
from browser import ERRORS, open_page, serve, settle
from conftest import CSV_PATH

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MATRIX = "Array.from(document.querySelectorAll('.js-plotly-plot'))" \
         ".find(p => (p.data || []).some(t => t.type === 'heatmap'))"  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, CSV_PATH)


def cell_position(page, true: str, pred: str) -> dict:
    """The page coordinates of a confusion cell's centre, from Plotly's own axes (l2p: a
    category's index to pixels within the plot area, whose offset is _offset)."""
    page.evaluate(f"() => {MATRIX}.scrollIntoView({{block: 'center'}})")
    return page.evaluate(
        f"""([t, p]) => {{
            const gd = {MATRIX}, L = gd._fullLayout, box = gd.getBoundingClientRect();
            const x = L.xaxis._offset + L.xaxis.l2p(L.xaxis._categories.indexOf(p));
            const y = L.yaxis._offset + L.yaxis.l2p(L.yaxis._categories.indexOf(t));
            return {{x: box.left + x, y: box.top + y}};
        }}""",
        [true, pred],
    )


def marked_cell(page) -> tuple[str, str] | None:
    """(true, predicted) of the outlined cell, read from the drawn figure's layout."""
    cell = page.evaluate(
        f"""() => {{
            const gd = {MATRIX};
            const shape = ((gd && gd.layout.shapes) || [])[0];
            if (!shape) return null;
            const c = gd._fullLayout.xaxis._categories;
            return [c[Math.round((shape.y0 + shape.y1) / 2)],
                    c[Math.round((shape.x0 + shape.x1) / 2)]];
        }}"""
    )
    return tuple(cell) if cell else None


def dropdown(page, label: str) -> str:
    """The value a selectbox shows."""
    return page.get_by_role("combobox", name=label).input_value()


def click_cell(page, true: str, pred: str) -> None:
    spot = cell_position(page, true, pred)
    page.mouse.move(spot["x"], spot["y"])  # Plotly picks the point under the pointer on hover
    page.mouse.click(spot["x"], spot["y"])
    page.wait_for_selector(f"text=/faces of class {true} predicted as {pred}/", timeout=120_000)
    settle(page)


def test_clicking_a_confusion_cell_shows_its_mistakes(server, browser, tmp_path):
    page = open_page(browser, server, "evaluate")
    page.get_by_role("combobox", name="Test-time augmentation").click()
    page.get_by_role("option", name="none", exact=True).click()
    settle(page)
    page.get_by_role("button", name="▶ Evaluate").click()
    page.wait_for_selector("text=Click a cell to see its faces", timeout=600_000)
    settle(page)
    first = marked_cell(page)
    assert first is not None and first[0] != first[1]  # the largest cell, off the diagonal

    for true, pred in [("fear", "sad"), ("angry", "neutral")]:
        click_cell(page, true, pred)
        deadline = time.time() + 30
        while marked_cell(page) != (true, pred) and time.time() < deadline:
            time.sleep(0.5)  # the redrawn chart arrives with the rerun
        assert marked_cell(page) == (true, pred)
        assert (dropdown(page, "True class"), dropdown(page, "Predicted as")) == (true, pred)
        captions = page.locator("[data-testid=stCaptionContainer]").all_inner_texts()
        assert any(f"true {true}" in c and c.startswith(pred) for c in captions), captions
    page.screenshot(path=str(tmp_path / "clicked.png"), full_page=True)

    page.get_by_role("button", name="🔍").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(timeout=60_000)
    dialog.get_by_text(f"saliency for {pred}").wait_for(timeout=60_000)
    settle(page)
    widths = [img.bounding_box()["width"] for img in dialog.locator("img").all()]
    assert len(widths) == 3 and min(widths) >= 250, widths  # face, two maps, ~300 px each
    page.screenshot(path=str(tmp_path / "dialog.png"))
    assert page.locator(ERRORS).count() == 0, page.locator(ERRORS).all_inner_texts()
