from consortia.apps.home import render_home

render_home()
