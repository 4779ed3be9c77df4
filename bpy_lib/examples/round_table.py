from bpy_lib import *

# object: pedestal table
# part_1: top
top = cylinder(radius=0.9, depth=0.05, location=[0, 0, 0.6], segments=64, name="top")
bevel(top, width=0.015)
# part_2: pedestal column
outline = polyline(points=[[0.08, -0.78], [0.06, -0.3], [0.09, 0.3], [0.12, 0.58]], plane="XZ")
column = revolve(outline, segments=32, name="column")
# part_3: feet
foot = box(size=[0.6, 0.08, 0.06], location=[0.3, 0, -0.8], round=0.02, name="feet")
taper(foot, factor=0.5, axis="X")
radial_array(foot, count=4)
export_scene()
