"""The application layer: the ``hftsig`` command line
(:mod:`~hftsig.app.cli`), the demo (:mod:`~hftsig.app.demo`), the live
terminal view (:mod:`~hftsig.app.liveview`) and the venue conformance
doctor (:mod:`~hftsig.app.doctor`).  It uses every other subpackage; none
of them imports it.
"""
