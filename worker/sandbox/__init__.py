"""The sandbox, one layer a module: what a program may write (:mod:`.policy`, :mod:`.names`),
what its verbs hand back (:mod:`.verb_guard`), and the operating-system layers around the
process that runs it (:mod:`.jail`, :mod:`.privileges`, :mod:`.landlock`, :mod:`.seccomp`).
Each layer holds on its own if the one before it falls."""
