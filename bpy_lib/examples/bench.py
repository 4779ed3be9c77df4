from bpy_lib import *

# object: park bench
# part_1: seat slats
slat = box(size=[1.8, 0.1, 0.04], location=[0, 0.2, 0], round=0.01, name="seat_slats")
linear_array(slat, count=4, offset=[0, -0.13, 0])
# part_2: back slats
back = box(size=[1.8, 0.1, 0.03], location=[0, -0.28, 0.25], round=0.01, name="back_slats")
rotate(back, angles=[75, 0, 0])
linear_array(back, count=3, offset=[0, -0.03, 0.13])
# part_3: side frames
frame = polyline(points=[[0.3, -0.55], [0.25, -0.02], [-0.25, -0.02], [-0.3, 0.6]], plane="YZ")
side = sweep(frame, radius=0.03, name="frames")
move(side, offset=[0.8, 0, 0])
mirror(side, axis="X", name="frame_left")
export_scene()
