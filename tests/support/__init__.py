"""What the tests share: the wait with a deadline (``waiting``), the recording HTTP target
(``targets``) and the running system as subprocesses (``stack``).

Fixtures stay in the ``conftest.py`` of each suite (their scopes differ); they build these.
"""
