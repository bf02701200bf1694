"""The Streamlit app's logic (``app.py`` is a thin page over it): ``session`` builds the
configurations and runs them in a background thread, ``charts`` turns its state into figures."""
