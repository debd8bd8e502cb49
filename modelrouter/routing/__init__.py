"""The routing core: assignment, decisions, the routing state and the experiment. No ASGI.

Never imports :mod:`modelrouter.analysis`, :mod:`modelrouter.asgi` or :mod:`modelrouter.web`.
"""
