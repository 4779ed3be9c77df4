from bpy_lib import *

# object: wine glass
# part_1: glass
outline = polyline(
    points=[
        [0, -0.9],
        [0.35, -0.9],
        [0.35, -0.87],
        [0.04, -0.84],
        [0.03, -0.1],
        [0.2, 0.0],
        [0.33, 0.3],
        [0.3, 0.9],
        [0.28, 0.9],
        [0.3, 0.3],
        [0.18, 0.03],
        [0, 0.0],
    ],
    plane="XZ",
)
glass = revolve(outline, segments=48, name="glass")
export_scene()
