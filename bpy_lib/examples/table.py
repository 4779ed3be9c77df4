from bpy_lib import *

# object: dining table
# part_1: table top
top = box(size=[1.9, 1.0, 0.06], location=[0, 0, 0.47], round=0.02, name="top")
# part_2: apron
apron = box(size=[1.7, 0.8, 0.1], location=[0, 0, 0.39], name="apron")
inner = box(size=[1.64, 0.74, 0.2], location=[0, 0, 0.39])
difference(apron, inner)
# part_3: legs
leg = box(size=[0.08, 0.08, 0.9], location=[0.85, 0.4, -0.05], name="legs")
taper(leg, factor=1.3)
grid_array(leg, counts=[2, 2], spacing=[-1.7, -0.8])
export_scene()
