"""Written like the "Load CLIP" and "Curve Optimizer" cells of kvfrans/clipdraw's clipdraw.ipynb,
run as a script: module-level code, `import clip`, a hard-coded CUDA device, `import pydiffvg`
and the notebook's calls, NUM_AUGS set inside the loop, torchvision augmentations.
Environment-only differences from the notebook: 16 paths, 3 iterations, an output folder from
argv, no ttools/IPython display helpers."""

import random
import sys

import clip
import torch

device = torch.device('cuda')
model, preprocess = clip.load('ViT-B/32', device, jit=False)

prompt = "Watercolor painting of an underwater submarine."
text_input = clip.tokenize(prompt).to(device)
use_normalized_clip = False

with torch.no_grad():
    text_features = model.encode_text(text_input)

import pydiffvg  # noqa: E402  (the notebook imports it in the optimizer cell)
import torchvision.transforms as transforms  # noqa: E402

pydiffvg.set_print_timing(False)
gamma = 1.0
args = lambda: None  # noqa: E731
args.num_paths = 16
args.num_iter = 3
args.max_width = 50
pydiffvg.set_use_gpu(torch.cuda.is_available())
device = torch.device('cuda')
pydiffvg.set_device(device)
canvas_width, canvas_height = 224, 224
num_paths = args.num_paths
max_width = args.max_width

augment_trans = transforms.Compose([
    transforms.RandomPerspective(fill=1, p=1, distortion_scale=0.5),
    transforms.RandomResizedCrop(224, scale=(0.7, 0.9)),
])
if use_normalized_clip:
    augment_trans = transforms.Compose([
        transforms.RandomPerspective(fill=1, p=1, distortion_scale=0.5),
        transforms.RandomResizedCrop(224, scale=(0.7, 0.9)),
        transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])

random.seed(0)
shapes = []
shape_groups = []
for i in range(num_paths):
    num_segments = random.randint(1, 3)
    num_control_points = torch.zeros(num_segments, dtype=torch.int32) + 2
    points = []
    p0 = (random.random(), random.random())
    points.append(p0)
    for j in range(num_segments):
        radius = 0.1
        p1 = (p0[0] + radius * (random.random() - 0.5), p0[1] + radius * (random.random() - 0.5))
        p2 = (p1[0] + radius * (random.random() - 0.5), p1[1] + radius * (random.random() - 0.5))
        p3 = (p2[0] + radius * (random.random() - 0.5), p2[1] + radius * (random.random() - 0.5))
        points.append(p1)
        points.append(p2)
        points.append(p3)
        p0 = p3
    points = torch.tensor(points)
    points[:, 0] *= canvas_width
    points[:, 1] *= canvas_height
    path = pydiffvg.Path(num_control_points=num_control_points, points=points, stroke_width=torch.tensor(1.0),
                         is_closed=False)
    shapes.append(path)
    path_group = pydiffvg.ShapeGroup(shape_ids=torch.tensor([len(shapes) - 1]), fill_color=None,
                                     stroke_color=torch.tensor([random.random(), random.random(), random.random(),
                                                                random.random()]))
    shape_groups.append(path_group)

scene_args = pydiffvg.RenderFunction.serialize_scene(canvas_width, canvas_height, shapes, shape_groups)
render = pydiffvg.RenderFunction.apply
img = render(canvas_width, canvas_height, 2, 2, 0, None, *scene_args)

points_vars = []
stroke_width_vars = []
color_vars = []
for path in shapes:
    path.points.requires_grad = True
    points_vars.append(path.points)
    path.stroke_width.requires_grad = True
    stroke_width_vars.append(path.stroke_width)
for group in shape_groups:
    group.stroke_color.requires_grad = True
    color_vars.append(group.stroke_color)

points_optim = torch.optim.Adam(points_vars, lr=1.0)
width_optim = torch.optim.Adam(stroke_width_vars, lr=0.1)
color_optim = torch.optim.Adam(color_vars, lr=0.01)

for t in range(args.num_iter):
    points_optim.zero_grad()
    width_optim.zero_grad()
    color_optim.zero_grad()
    scene_args = pydiffvg.RenderFunction.serialize_scene(canvas_width, canvas_height, shapes, shape_groups)
    img = render(canvas_width, canvas_height, 2, 2, t, None, *scene_args)
    img = img[:, :, 3:4] * img[:, :, :3] + torch.ones(img.shape[0], img.shape[1], 3,
                                                      device=pydiffvg.get_device()) * (1 - img[:, :, 3:4])
    img = img[:, :, :3]
    img = img.unsqueeze(0)
    img = img.permute(0, 3, 1, 2)  # NHWC -> NCHW

    loss = 0
    NUM_AUGS = 4
    img_augs = []
    for n in range(NUM_AUGS):
        img_augs.append(augment_trans(img))
    im_batch = torch.cat(img_augs)
    image_features = model.encode_image(im_batch)
    for n in range(NUM_AUGS):
        loss -= torch.cosine_similarity(text_features, image_features[n:n + 1], dim=1)
    loss.backward()
    points_optim.step()
    width_optim.step()
    color_optim.step()
    for path in shapes:
        path.stroke_width.data.clamp_(1.0, max_width)
    for group in shape_groups:
        group.stroke_color.data.clamp_(0.0, 1.0)

out_dir = sys.argv[1] if len(sys.argv) > 1 else "res"
pydiffvg.imwrite(img.detach().cpu().squeeze(0).permute(1, 2, 0), out_dir + "/iter_final.png", gamma=gamma)
pydiffvg.save_svg(out_dir + "/final.svg", canvas_width, canvas_height, shapes, shape_groups)
