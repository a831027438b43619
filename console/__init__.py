"""The kjs console: a web UI that ``kjs api`` serves under ``/ui/`` (docs/console.md).

Server-rendered pages (Jinja2 templates, htmx for refresh and forms, no build step, no CDN):
the jobs and their runs, dead letters, and the pipeline's consumer lag. It sits above the
processes in the layers because it shows both the API's data (``api``) and the lag monitor's
(``lag``), which may not import each other; ``kjs api`` mounts it on the API's app.
"""
