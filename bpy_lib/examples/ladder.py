from bpy_lib import *

# object: step ladder
# part_1: rails
rail = box(size=[0.06, 0.04, 1.9], location=[-0.3, 0, 0], name="rails")
linear_array(rail, count=2, offset=[0.6, 0, 0])
# part_2: rungs
rung = cylinder(
    radius=0.02, depth=0.6, location=[0, 0, -0.75], rotation=[0, 90, 0], segments=12, name="rungs"
)
linear_array(rung, count=6, offset=[0, 0, 0.3])
# part_3: feet
foot = box(size=[0.08, 0.08, 0.04], location=[-0.3, 0, -0.96], name="feet")
linear_array(foot, count=2, offset=[0.6, 0, 0])
export_scene()
