from bpy_lib import *

# object: wine bottle
# part_1: glass body
outline = polyline(
    points=[
        [0, -0.95],
        [0.28, -0.95],
        [0.3, -0.9],
        [0.3, 0.2],
        [0.26, 0.35],
        [0.12, 0.5],
        [0.1, 0.85],
        [0, 0.85],
    ],
    plane="XZ",
)
body = revolve(outline, segments=48, name="glass")
# part_2: cork
cork = cylinder(radius=0.09, depth=0.12, location=[0, 0, 0.9], segments=24, name="cork")
# part_3: label
label = cylinder(radius=0.305, depth=0.35, location=[0, 0, -0.3], segments=48, name="label")
export_scene()
