"""The data pipeline (DESIGN §6): parts, objects, renders and the training datasets.

Stages, one module each:

- :mod:`datagen.part_generator`: random single-part ``bpy_lib`` programs of every family,
  run in the sandboxed executor, filtered (failures, degenerate meshes, near-duplicates),
  written as resumable JSONL + npz shards.
- :mod:`datagen.object_assembler`: object programs of the categories in
  ``configs/categories.yaml``, composed of labelled parts (``# part_k: label``), with
  symmetric parts as mirror/array calls.
- :mod:`datagen.dataset_builder`: runs and renders the objects and writes the SFT, RL and
  eval JSONL files in the Qwen2.5-VL chat format, the ground-truth meshes and a dataset card.
- :mod:`datagen.part_fitter`: finds a ``bpy_lib`` program that reproduces a given mesh.

Only :mod:`datagen.render_stage` imports Blender (``bpy``, through :mod:`worker.render`);
everything else imports without it and runs programs through :class:`worker.executor.ExecutorPool`.
"""
