from bpy_lib import *

# object: wall hook
# part_1: wall plate
plate = box(size=[0.45, 0.08, 1.1], location=[0, -0.45, 0.1], round=0.03, name="plate")
# part_2: screws
screw = cylinder(
    radius=0.045,
    depth=0.03,
    location=[0, -0.4, 0.5],
    rotation=[90, 0, 0],
    segments=16,
    name="screws",
)
linear_array(screw, count=2, offset=[0, 0, -0.8])
# part_3: hook arm
path = bezier(points=[[0, -0.42, 0.0], [0, 0.3, 0.0], [0, 0.52, 0.3], [0, 0.45, 0.68]])
arm = sweep(path, radius=0.06, scales=[1, 0.7], name="arm")
# part_4: end knob
knob = sphere(radius=0.065, location=[0, 0.45, 0.68], segments=16, rings=8, name="knob")
export_scene()
