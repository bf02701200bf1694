"""mimmx teaching app: `streamlit run app.py` (or `make app`).

Placeholder page until the app issue lands: it shows which datasets mimmx can see, so a
lecturer can check a machine before class.
"""

import streamlit as st

from mimmx import __version__, data

st.set_page_config(page_title="mimmx", layout="wide")
st.title("mimmx: confounder-free learning by mutual-information minimisation")
st.markdown(
    "An image encoder splits its features into a primary-task part **f_y** and one part per "
    "spurious factor **f_z**; training keeps the mutual information between them small, so "
    "that y is predicted without the shortcut. The interactive training page comes next; "
    "this page checks that the datasets are in place."
)
rows = []
for name in data.DATASETS:
    for s in data.file_status(name):
        rows.append({"dataset": name, "file": s.stem, "state": s.state, "path": str(s.path or "-")})
st.dataframe(rows, use_container_width=True)
if any(r["state"] != "verified" for r in rows):
    st.warning(
        "Some dataset files are missing or corrupted. Run `python -m mimmx data download`, "
        f"or set `{data.ENV_VAR}` to a folder that has them, then reload."
    )
st.caption(f"mimmx {__version__}")
