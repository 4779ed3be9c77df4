"""Plain-Python geometry under the metrics: sampling mesh surfaces (:mod:`.sampling`) and
nearest-neighbour distances (:mod:`.nearest`, :mod:`.nearest_far`). No Blender. Mesh files
are read by :mod:`llm3d.meshio`."""
