from consortia.demo.home import render_home

render_home()
