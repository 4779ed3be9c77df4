from bpy_lib import *

# object: teapot
# part_1: body
body = sphere(radius=0.55, segments=48, rings=24, name="body")
scale(body, factor=[1, 1, 0.75])
# part_2: lid
lid = sphere(radius=0.25, location=[0, 0, 0.35], segments=32, rings=12, name="lid")
scale(lid, factor=[1, 1, 0.5])
knob = sphere(radius=0.06, location=[0, 0, 0.5], segments=16, rings=8, name="knob")
# part_3: spout
spout_path = bezier(points=[[0.45, 0, -0.1], [0.75, 0, -0.05], [0.8, 0, 0.2], [0.95, 0, 0.35]])
spout = sweep(spout_path, radius=0.07, scales=[1, 0.5], name="spout")
# part_4: handle
handle_path = arc(
    radius=0.28, start_angle=90, end_angle=270, center=[-0.5, 0, 0.05], plane="XZ", segments=20
)
handle = sweep(handle_path, radius=0.04, name="handle")
# part_5: base ring
foot = cylinder(radius=0.3, depth=0.05, location=[0, 0, -0.42], segments=48, name="foot")
export_scene()
