"""The composition root: the one place that builds the engine, the web layer and
the timed jobs and wires them together (server/app.py), runs them (serve.py)
and seeds the local demo (demo.py). Nothing else imports it but the command
line (engine/__main__.py) and the bench."""
