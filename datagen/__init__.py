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
- :mod:`datagen.part_fitter` (with :mod:`datagen.fit_candidates`, :mod:`datagen.fit_composite`,
  :mod:`datagen.shapes`): finds a ``bpy_lib`` program that reproduces a given mesh.
- :mod:`datagen.infinigen_extractor`: Infinigen assets split into labelled parts, through
  an optional sidecar environment.

Blender-only modules: :mod:`datagen.render_stage` (``bpy`` through :mod:`worker.render`)
and :mod:`datagen.infinigen_sidecar` (runs inside the Infinigen environment). Everything
else imports without Blender and runs programs through :class:`worker.execution.executor.ExecutorPool`.
"""
