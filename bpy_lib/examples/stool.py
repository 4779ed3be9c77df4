from bpy_lib import *

# object: bar stool
# part_1: seat
seat = cylinder(radius=0.4, depth=0.08, location=[0, 0, 0.9], segments=48, name="seat")
bevel(seat, width=0.03, segments=3)
# part_2: legs
leg = cylinder(radius=0.03, depth=1.85, location=[0.3, 0, -0.05], segments=12, name="legs")
rotate(leg, angles=[0, -6, 0])
radial_array(leg, count=4)
# part_3: foot ring
ring = torus(major_radius=0.36, minor_radius=0.02, location=[0, 0, -0.35], name="foot_ring")
export_scene()
