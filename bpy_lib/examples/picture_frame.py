from bpy_lib import *

# object: picture frame
# part_1: moulding
path = rectangle(width=1.4, height=1.0, plane="XZ")
section = polyline(
    points=[[-0.05, -0.02], [0.05, -0.02], [0.05, 0.01], [0.0, 0.03], [-0.05, 0.03]], closed=True
)
frame = sweep(path, profile=section, name="moulding")
# part_2: picture
picture = plane(size=[1.35, 0.95], rotation=[90, 0, 0], name="picture")
# part_3: backing board
board = box(size=[1.36, 0.01, 0.96], location=[0, 0.02, 0], name="backing")
export_scene()
