from bpy_lib import *

# object: dining chair
# part_1: seat
seat = box(size=[0.9, 0.85, 0.08], location=[0, 0, 0.0], round=0.02, name="seat")
# part_2: legs
leg = cylinder(radius=0.035, depth=0.9, location=[0.38, 0.35, -0.49], segments=16, name="legs")
taper(leg, factor=0.7, axis="Z")
grid_array(leg, counts=[2, 2], spacing=[-0.76, -0.7])
# part_3: back posts
post = box(size=[0.06, 0.06, 0.9], location=[0.38, 0.38, 0.49], name="back_posts")
linear_array(post, count=2, offset=[-0.76, 0, 0])
# part_4: back slats
slat = box(size=[0.7, 0.03, 0.08], location=[0, 0.38, 0.35], name="slats")
linear_array(slat, count=3, offset=[0, 0, 0.2])
# part_5: top rail
rail = box(size=[0.86, 0.05, 0.12], location=[0, 0.38, 0.9], round=0.02, name="top_rail")
export_scene()
