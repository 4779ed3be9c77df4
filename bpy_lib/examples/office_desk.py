from bpy_lib import *

# object: office desk with drawers and a monitor
# part_1: desktop
top = box(size=[1.8, 0.8, 0.05], location=[0, 0, 0.2], round=0.01, name="desktop")
# part_2: left leg panel
left = box(size=[0.05, 0.75, 0.9], location=[-0.85, 0, -0.27], name="left_panel")
# part_3: drawer cabinet
cabinet = box(size=[0.45, 0.7, 0.9], location=[0.6, 0, -0.27], name="cabinet")
# part_4: drawer fronts
front = box(
    size=[0.41, 0.02, 0.26], location=[0.6, -0.36, -0.03], round=0.005, name="drawer_fronts"
)
linear_array(front, count=3, offset=[0, 0, -0.29])
# part_5: drawer handles
pull = capsule(
    radius=0.012,
    depth=0.16,
    location=[0.6, -0.38, 0.04],
    rotation=[0, 90, 0],
    segments=12,
    name="handles",
)
linear_array(pull, count=3, offset=[0, 0, -0.29])
# part_6: modesty panel
modesty = box(size=[1.2, 0.03, 0.45], location=[-0.17, 0.3, -0.05], name="modesty_panel")
# part_7: monitor stand
stand = cylinder(radius=0.12, depth=0.02, location=[0, 0.15, 0.235], segments=32, name="stand_base")
neck = box(size=[0.05, 0.03, 0.3], location=[0, 0.17, 0.39], name="stand_neck")
# part_8: monitor
screen = box(size=[0.9, 0.04, 0.5], location=[0, 0.13, 0.7], round=0.01, name="monitor")
# part_9: keyboard
keyboard = box(size=[0.45, 0.15, 0.02], location=[0, -0.2, 0.235], round=0.005, name="keyboard")
# part_10: mug
mug = cylinder(radius=0.04, depth=0.1, location=[-0.6, -0.1, 0.275], segments=24, name="mug")
export_scene()
