"""Written like cyclomon/CLIPstyler's train_CLIPstyler.py: argparse flags, module-level training,
`models.vgg19(pretrained=True)`, a hard-coded `device='cuda'` before `clip.load`, 224 px
inputs through `clip_normalize` with OpenAI's mean/std, perspective-warped crops and the
threshold. Environment-only differences: a small image, 2 steps, a 3-layer style net instead
of the U-Net, a synthetic content image."""

import argparse

import torch
import torch.nn.functional as F
from torchvision import models, transforms

import clip

parser = argparse.ArgumentParser()
parser.add_argument('--text', type=str, default="Fire")
parser.add_argument('--lambda_patch', type=float, default=9000)
parser.add_argument('--lambda_dir', type=float, default=500)
parser.add_argument('--lambda_c', type=float, default=150)
parser.add_argument('--crop_size', type=int, default=32)
parser.add_argument('--num_crops', type=int, default=64)
parser.add_argument('--img_size', type=int, default=64)
parser.add_argument('--max_step', type=int, default=2)
parser.add_argument('--lr', type=float, default=5e-4)
parser.add_argument('--thresh', type=float, default=0.7)
parser.add_argument('--out', type=str, default="styled.png")
args = parser.parse_args()

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

VGG = models.vgg19(pretrained=True).features
VGG.to(device)
for parameter in VGG.parameters():
    parameter.requires_grad_(False)


def clip_normalize(image, device):
    image = F.interpolate(image, size=224, mode='bicubic')
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).to(device).view(1, -1, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).to(device).view(1, -1, 1, 1)
    return (image - mean) / std


torch.manual_seed(0)
content_image = torch.rand(1, 3, args.img_size, args.img_size).to(device)
content_features = VGG[:10](content_image)
style_net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 3, 3, padding=1), torch.nn.Sigmoid()).to(device)
optimizer = torch.optim.Adam(style_net.parameters(), lr=args.lr)

cropper = transforms.Compose([transforms.RandomCrop(args.crop_size)])
augment = transforms.Compose([
    transforms.RandomPerspective(fill=0, p=1, distortion_scale=0.5),
    transforms.Resize(224),
])
device = 'cuda'
clip_model, preprocess = clip.load('ViT-B/32', device, jit=False)

with torch.no_grad():
    tokens = clip.tokenize([args.text]).to(device)
    text_features = clip_model.encode_text(tokens).mean(axis=0, keepdim=True)
    text_features /= text_features.norm(dim=-1, keepdim=True)
    text_source = clip_model.encode_text(clip.tokenize(["a Photo"]).to(device))
    text_source /= text_source.norm(dim=-1, keepdim=True)
    source_features = clip_model.encode_image(clip_normalize(content_image, device))
    source_features /= source_features.clone().norm(dim=-1, keepdim=True)

num_crops = args.num_crops
for epoch in range(0, args.max_step):
    target = style_net(content_image)
    content_loss = torch.mean((VGG[:10](target) - content_features) ** 2)
    loss_patch = 0
    img_proc = []
    for n in range(num_crops):
        target_crop = cropper(target)
        target_crop = augment(target_crop)
        img_proc.append(target_crop)
    img_proc = torch.cat(img_proc, dim=0)
    image_features = clip_model.encode_image(clip_normalize(img_proc, device))
    image_features /= image_features.clone().norm(dim=-1, keepdim=True)
    img_direction = image_features - source_features
    img_direction /= img_direction.clone().norm(dim=-1, keepdim=True)
    text_direction = (text_features - text_source).repeat(image_features.size(0), 1)
    text_direction /= text_direction.norm(dim=-1, keepdim=True)
    loss_temp = 1 - torch.cosine_similarity(img_direction, text_direction, dim=1)
    loss_temp[loss_temp < args.thresh] = 0
    loss_patch += loss_temp.mean()
    glob_features = clip_model.encode_image(clip_normalize(target, device))
    glob_features /= glob_features.clone().norm(dim=-1, keepdim=True)
    glob_direction = glob_features - source_features
    glob_direction /= glob_direction.clone().norm(dim=-1, keepdim=True)
    loss_glob = (1 - torch.cosine_similarity(glob_direction, text_direction, dim=1)).mean()
    total_loss = args.lambda_patch * loss_patch + args.lambda_c * content_loss + args.lambda_dir * loss_glob
    optimizer.zero_grad()
    total_loss.backward()
    optimizer.step()

from torchvision import utils as vutils  # noqa: E402

vutils.save_image(target.clamp(0, 1), args.out, nrow=1, normalize=True)
