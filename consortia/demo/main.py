"""Entry script of the demo (``consortia demo`` runs ``streamlit run`` on this file).

Only navigation lives here, and only Streamlit is imported: the Home page must appear fast,
and each vertical page imports the training stack when it is opened.
"""

import streamlit as st

st.set_page_config(page_title="Consortia demo", page_icon=":material/hub:", layout="wide")

PAGES = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/healthcare.py", title="Healthcare", icon=":material/local_hospital:"),
    st.Page("views/finance.py", title="Finance", icon=":material/account_balance:"),
    st.Page("views/manufacturing.py", title="Manufacturing", icon=":material/factory:"),
]

st.navigation(PAGES).run()
