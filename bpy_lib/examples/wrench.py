from bpy_lib import *

# object: open-end wrench
# part_1: handle
handle = box(size=[1.3, 0.12, 0.04], round=0.015, name="handle")
# part_2: open jaw head
head = cylinder(radius=0.16, depth=0.05, location=[0.72, 0, 0], segments=32, name="jaw")
slot = box(size=[0.3, 0.12, 0.2], location=[0.84, 0, 0])
difference(head, slot)
# part_3: ring head
ring = cylinder(radius=0.14, depth=0.05, location=[-0.72, 0, 0], segments=32, name="ring")
hole = prism(sides=6, radius=0.08, depth=0.2, location=[-0.72, 0, 0])
difference(ring, hole)
union(handle, head, ring)
export_scene()
