from consortia.demo.vertical_page import render_vertical_page

render_vertical_page("finance")
