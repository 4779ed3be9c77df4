from bpy_lib import *

# object: bookshelf
# part_1: side panels
side = box(size=[0.04, 0.35, 1.9], location=[-0.48, 0, 0], name="sides")
linear_array(side, count=2, offset=[0.96, 0, 0])
# part_2: shelves
shelf = box(size=[0.92, 0.33, 0.03], location=[0, 0.01, -0.93], name="shelves")
linear_array(shelf, count=5, offset=[0, 0, 0.465])
# part_3: back panel
back = box(size=[0.96, 0.01, 1.9], location=[0, 0.17, 0], name="back")
# part_4: books
book = box(size=[0.05, 0.25, 0.3], location=[-0.4, 0.02, -0.76], name="books")
linear_array(book, count=9, offset=[0.06, 0, 0])
export_scene()
