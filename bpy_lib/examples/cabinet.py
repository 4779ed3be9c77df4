from bpy_lib import *

# object: kitchen cabinet
# part_1: carcass
body = box(size=[1.2, 0.6, 1.4], name="carcass")
hollow = box(size=[1.12, 0.6, 1.32], location=[0, -0.04, 0])
difference(body, hollow)
# part_2: doors
door = box(size=[0.58, 0.03, 1.3], location=[-0.3, -0.31, 0], round=0.01, name="doors")
mirror(door, axis="X", copy=False)
linear_array(door, count=2, offset=[-0.6, 0, 0])
# part_3: handles
bar = capsule(radius=0.015, depth=0.3, location=[-0.06, -0.36, 0.2], segments=12, name="handles")
linear_array(bar, count=2, offset=[0.12, 0, 0])
# part_4: plinth
plinth = box(size=[1.1, 0.5, 0.1], location=[0, 0.02, -0.75], name="plinth")
export_scene()
