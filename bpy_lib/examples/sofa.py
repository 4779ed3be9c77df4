from bpy_lib import *

# object: three-seat sofa
# part_1: base
base = box(size=[1.9, 0.85, 0.3], location=[0, 0, -0.35], round=0.03, name="base")
# part_2: seat cushions
cushion = box(size=[0.58, 0.7, 0.16], location=[-0.6, 0.05, -0.12], round=0.05, name="cushions")
linear_array(cushion, count=3, offset=[0.6, 0, 0])
# part_3: backrest
back = box(size=[1.9, 0.22, 0.55], location=[0, 0.33, 0.05], round=0.06, name="back")
rotate(back, angles=[8, 0, 0])
# part_4: armrests
arm = box(size=[0.16, 0.85, 0.5], location=[0.9, 0, -0.15], round=0.06, name="arm_right")
mirror(arm, axis="X", name="arm_left")
# part_5: feet
foot = cone(
    radius1=0.04, radius2=0.03, depth=0.12, location=[0.85, 0.35, -0.56], segments=16, name="feet"
)
grid_array(foot, counts=[2, 2], spacing=[-1.7, -0.7])
export_scene()
