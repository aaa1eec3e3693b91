"""`featuregen serve`: the search HTTP API and its web page (FastAPI, served by uvicorn).

`app.create_app` builds the ASGI application over `core.search` (the same search code as the
CLI): JSON endpoints under `/api/`, stored images and cached thumbnails by id (`files`), and
the page in `static/` (plain HTML, CSS and JS, nothing fetched from elsewhere).
"""
