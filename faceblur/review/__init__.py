"""``face-blur review``: a local web page to check a plan before publishing (issue 16).

One card per person (or per sequence, for plans without persons) with the best face, how long and
in how many shots it appears, the decision with its reason and score, and a toggle; a timeline per
person; a frame viewer (as rendered, original, or original with every box); drawing a face the
detector missed; Save (the edited plan beside the original, with an audit of who changed what) and
Render (in a child process, with progress). Modules: ``frames`` (frames read on demand), ``edits``
(pure plan edits and the audit), ``overlay`` (boxes drawn per decision, also ``face-blur render
--draw-boxes``), ``session`` (one review's state and where it writes), ``app`` (the Starlette app and
the uvicorn server), ``job`` (the render process).
"""
