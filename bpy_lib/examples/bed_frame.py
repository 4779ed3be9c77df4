from bpy_lib import *

# object: bed frame
# part_1: side rails
rail = box(size=[0.06, 1.9, 0.2], location=[-0.7, 0, -0.3], name="rails")
linear_array(rail, count=2, offset=[1.4, 0, 0])
# part_2: slats
slat = box(size=[1.34, 0.08, 0.02], location=[0, -0.85, -0.28], name="slats")
linear_array(slat, count=12, offset=[0, 0.155, 0])
# part_3: headboard
head = box(size=[1.52, 0.06, 0.8], location=[0, 0.97, 0.0], round=0.02, name="headboard")
# part_4: footboard
foot = box(size=[1.52, 0.06, 0.4], location=[0, -0.97, -0.2], round=0.02, name="footboard")
# part_5: legs
leg = box(size=[0.08, 0.08, 0.3], location=[0.72, 0.95, -0.55], name="legs")
grid_array(leg, counts=[2, 2], spacing=[-1.44, -1.9])
export_scene()
