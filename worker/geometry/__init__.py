"""Plain-Python geometry under the metrics: reading meshes (:mod:`.meshio`), sampling their
surfaces (:mod:`.sampling`) and nearest-neighbour distances (:mod:`.nearest`,
:mod:`.nearest_far`). No Blender."""
