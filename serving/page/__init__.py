"""The control tower: one server-rendered page over the API's own numbers, for people who would
rather look than read JSON (KPI tiles, the exception queue, predictions beside outcomes, late
risk, replenishment). Templates are Jinja2, charts inline SVG drawn in Python, one stylesheet:
no build step, no CDN."""
