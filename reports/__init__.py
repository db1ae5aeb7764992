"""Reports: what is read out of the store for people outside the conversation, apart from
the handoff flow. Weekly service statistics (``statistics``), the journal export of a case
(``journal``: text and FHIR), and the outcome reports of the measured courses
(``outcome_report``, ``measure_fhir``, ``course_chart``). They depend on ``flows`` and
``handoff`` (the domain and the store ports); nothing in ``handoff`` imports them: the desk's
export is given to it at wiring (``bot/wiring.py``)."""
