"""Streamlit-side helpers shared by the pages: state, cached resources, charts, training, webcam.

Everything heavy lives in fer_core; this package only adapts it to Streamlit.
"""
