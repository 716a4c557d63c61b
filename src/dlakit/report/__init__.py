"""Human-readable and machine-readable reports of each stage's results.

One module per kind of result (check, fix, zoo, calibrate, accuracy, artifact for compile /
inspect / run, trace, profile); ``console`` holds the output setting every verb shares (-v, -q,
``--json PATH``) and ``tables`` the layout that fits tables to the terminal.
"""
