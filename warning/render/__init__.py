"""Message rendering: templates per audience × channel × language (`renderer`), SMS segments (`sms`),
text-to-speech rewriting (`speech`) and the words every message shares (`words`).

Deliberately empty: `render.words` is needed by commands that never render (status, escalation), and
importing this package must not load jinja2 for them. The renderer is `warning.render.renderer`.
"""
