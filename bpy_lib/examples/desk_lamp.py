from bpy_lib import *

# object: desk lamp
# part_1: base
base = cylinder(radius=0.35, depth=0.08, location=[0, 0, -0.9], segments=48, name="base")
bevel(base, width=0.02)
# part_2: lower arm
arm1 = polyline(points=[[0, 0, -0.86], [0.15, 0, -0.1]])
lower = sweep(arm1, radius=0.025, name="lower_arm")
# part_3: joint
joint = sphere(radius=0.05, location=[0.15, 0, -0.1], segments=16, rings=8, name="joint")
# part_4: upper arm
arm2 = polyline(points=[[0.15, 0, -0.1], [-0.3, 0, 0.45]])
upper = sweep(arm2, radius=0.025, name="upper_arm")
# part_5: shade
shade = cone(
    radius1=0.28,
    radius2=0.08,
    depth=0.3,
    location=[-0.3, 0, 0.45],
    rotation=[0, -130, 0],
    name="shade",
)
inside = cone(
    radius1=0.25, radius2=0.06, depth=0.3, location=[-0.32, 0, 0.43], rotation=[0, -130, 0]
)
difference(shade, inside)
export_scene()
