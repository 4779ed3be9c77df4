from bpy_lib import *

# object: wall hook
# part_1: wall plate
plate = box(size=[0.3, 0.05, 0.7], location=[0, -0.3, 0.1], round=0.02, name="plate")
# part_2: screws
screw = cylinder(
    radius=0.03,
    depth=0.02,
    location=[0, -0.27, 0.35],
    rotation=[90, 0, 0],
    segments=16,
    name="screws",
)
linear_array(screw, count=2, offset=[0, 0, -0.5])
# part_3: hook arm
path = bezier(points=[[0, -0.28, 0.05], [0, 0.2, 0.05], [0, 0.35, 0.2], [0, 0.3, 0.45]])
arm = sweep(path, radius=0.04, end_scale=0.7, name="arm")
# part_4: end knob
knob = sphere(radius=0.045, location=[0, 0.3, 0.45], segments=16, rings=8, name="knob")
export_scene()
