from bpy_lib import *

# object: claw hammer
# part_1: handle
handle = capsule(radius=0.05, depth=1.5, location=[0, 0, -0.2], segments=24, name="handle")
scale(handle, factor=[1, 0.7, 1])
# part_2: head
head = box(size=[0.4, 0.1, 0.12], location=[0.05, 0, 0.6], round=0.01, name="head")
# part_3: striking face
face = cylinder(
    radius=0.07, depth=0.1, location=[0.28, 0, 0.6], rotation=[0, 90, 0], segments=24, name="face"
)
# part_4: claw
claw = wedge(size=[0.35, 0.08, 0.1], location=[-0.3, 0, 0.62], rotation=[0, 180, 0], name="claw")
bend(claw, angle=-30, axis="X", toward="Z")
export_scene()
