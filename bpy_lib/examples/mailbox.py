from bpy_lib import *

# object: mailbox on a post
# part_1: box with arched top
section = polyline(
    points=[
        [-0.25, 0],
        [0.25, 0],
        [0.25, 0.3],
        [0.2, 0.45],
        [0.1, 0.53],
        [0, 0.55],
        [-0.1, 0.53],
        [-0.2, 0.45],
        [-0.25, 0.3],
    ],
    closed=True,
    plane="YZ",
)
mailbox = extrude(section, depth=0.9, name="mailbox")
move(mailbox, offset=[-0.45, 0, 0.2])
# part_2: flag
flag = box(size=[0.02, 0.12, 0.3], location=[0.2, 0.27, 0.55], name="flag")
# part_3: post
post = box(size=[0.1, 0.1, 1.2], location=[0, 0, -0.4], name="post")
export_scene()
