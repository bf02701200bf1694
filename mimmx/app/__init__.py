"""The Streamlit app's logic (``app.py`` is a thin page over it): ``session`` builds the
configurations and has them trained in ``workers`` (the server's training processes),
``charts`` turns the shared state into figures."""
