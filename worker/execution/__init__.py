"""Running programs in Blender: the :class:`~worker.execution.executor.Executor` (parent side),
the jailed fork server (:mod:`.blender_server`, :mod:`.fork_server`), the forked child that runs
one program (:mod:`.blender_child`), the frames between them (:mod:`.protocol`) and how a
child's end becomes an :class:`~worker.types.ExecResult` (:mod:`.outcome`)."""
