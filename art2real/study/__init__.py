"""The user study of the paper's Table 2: two 2AFC tests per competitor against Art2Real, *realism* (two
translations of a painting: which looks more like a real photo?) and *coherence* (the painting and two
translations: which is more faithful to the painting?), each pair judged by several raters who first pass a gate
of gold pairs.

    build.py     build_study: translation folders -> a study folder
    manifest.py  the manifest (pairs, sides, methods, gold answers) and the paper's Table 2
    gold.py      the gold-pair recipe (degradation)
    store.py     the SQLite vote store (WAL), assignment of pairs to raters
    server.py    the web study (Flask + waitress)
    pages.py     its HTML, CSS and JavaScript (all inline, nothing from other hosts)
    crowd.py     CSV export for Prolific / MTurk and import of their result files
    simulate.py  a simulated rater (Inception distances) for demos without human votes
    analysis.py  Table 2: shares with Wilson intervals, Fleiss' kappa, the paper's values
    figure.py    the Table 2 bar chart (matplotlib object API)
    demo.py      stand-in translation folders for demos and tests (not model outputs)
    cli.py       `art2real study build|serve|export|import|simulate|table`

A study folder:

    manifest.json     every pair and gold pair, which side shows which method, the seed, the sources (never served)
    organiser_token   the secret of the results page (mode 0600, never served)
    images/           <32 hex digits>.<ext>, one file per side of each pair: names reveal no method
    raters.txt        optional allow-list of rater ids, one a line
    votes.sqlite      the votes (SQLite, WAL), made on first use
    crowd/            exported task CSVs, the MTurk layout and the task map (export)
"""
from .analysis import fleiss_kappa, table2, wilson_interval
from .build import build_study
from .manifest import ART2REAL, PAPER_TABLE2, TESTS, Manifest
from .store import VoteStore

__all__ = ["ART2REAL", "PAPER_TABLE2", "TESTS", "Manifest", "VoteStore", "build_study", "fleiss_kappa", "table2",
           "wilson_interval"]
