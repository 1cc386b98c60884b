"""Figures and pages that show a run to people: its curves (:mod:`.curves`), its best
crystals (:mod:`.crystals`) and the one offline HTML page that holds both (:mod:`.page`).

``crystalrl.plot`` and ``crystalrl.report`` are their commands. Nothing is re-exported
here, so that plotting a run's curves does not load what judging crystals needs.
"""
