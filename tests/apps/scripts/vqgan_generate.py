"""Written like nerdyrodent/VQGAN-CLIP's generate.py: everything at import time, warnings
silenced, `from CLIP import clip`, taming's VQModel built from a config YAML and
`init_from_ckpt` on a Lightning checkpoint, the cutout classes defined and used in the module,
OpenAI's mean/std hard-coded in `normalize`. Environment-only differences: a smaller flag set,
a tiny VQGAN, CPU-sized defaults."""

import argparse
import warnings

import kornia.augmentation as K
import torch
from omegaconf import OmegaConf
from taming.models import vqgan
from torch import nn, optim
from torch.nn import functional as F
from torchvision import transforms

from CLIP import clip

warnings.filterwarnings('ignore')

vq_parser = argparse.ArgumentParser(description='Image generation using VQGAN+CLIP')
vq_parser.add_argument("-p", "--prompts", type=str, default="a red circle", dest='prompts')
vq_parser.add_argument("-i", "--iterations", type=int, default=3, dest='max_iterations')
vq_parser.add_argument("-s", "--size", nargs=2, type=int, default=[64, 64], dest='size')
vq_parser.add_argument("-m", "--clip_model", type=str, default='ViT-B/32', dest='clip_model')
vq_parser.add_argument("-conf", "--vqgan_config", type=str, default='checkpoints/vqgan_imagenet_f16_16384.yaml',
                       dest='vqgan_config')
vq_parser.add_argument("-ckpt", "--vqgan_checkpoint", type=str, default='checkpoints/vqgan_imagenet_f16_16384.ckpt',
                       dest='vqgan_checkpoint')
vq_parser.add_argument("-lr", "--learning_rate", type=float, default=0.1, dest='step_size')
vq_parser.add_argument("-cuts", "--num_cuts", type=int, default=32, dest='cutn')
vq_parser.add_argument("-cutp", "--cut_power", type=float, default=1., dest='cut_pow')
vq_parser.add_argument("-o", "--output", type=str, default="output.png", dest='output')
vq_parser.add_argument("-cd", "--cuda_device", type=str, default="cuda:0", dest='cuda_device')
args = vq_parser.parse_args()

if not args.cuda_device == 'cpu' and not torch.cuda.is_available():
    args.cuda_device = 'cpu'


class ReplaceGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


replace_grad = ReplaceGrad.apply


def vector_quantize(x, codebook):
    d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
    indices = d.argmin(-1)
    x_q = F.one_hot(indices, codebook.shape[0]).to(d.dtype) @ codebook
    return replace_grad(x_q, x)


class MakeCutouts(nn.Module):
    def __init__(self, cut_size, cutn, cut_pow=1.):
        super().__init__()
        self.cut_size = cut_size
        self.cutn = cutn
        self.cut_pow = cut_pow
        self.augs = nn.Sequential(
            K.RandomAffine(degrees=15, translate=0.1, shear=5, p=0.7, padding_mode='zeros', keepdim=True),
            K.RandomPerspective(0.7, p=0.7),
            K.ColorJitter(hue=0.1, saturation=0.1, p=0.7),
        )
        self.noise_fac = 0.1
        self.av_pool = nn.AdaptiveAvgPool2d((self.cut_size, self.cut_size))
        self.max_pool = nn.AdaptiveMaxPool2d((self.cut_size, self.cut_size))

    def forward(self, input):
        cutouts = []
        for _ in range(self.cutn):
            cutout = (self.av_pool(input) + self.max_pool(input)) / 2
            cutouts.append(cutout)
        batch = self.augs(torch.cat(cutouts, dim=0))
        if self.noise_fac:
            facs = batch.new_empty([self.cutn, 1, 1, 1]).uniform_(0, self.noise_fac)
            batch = batch + facs * torch.randn_like(batch)
        return batch


def load_vqgan_model(config_path, checkpoint_path):
    config = OmegaConf.load(config_path)
    if config.model.target == 'taming.models.vqgan.VQModel':
        model = vqgan.VQModel(**config.model.params)
        model.eval().requires_grad_(False)
        model.init_from_ckpt(checkpoint_path)
    else:
        raise ValueError(f'unknown model type: {config.model.target}')
    del model.loss
    return model


device = torch.device(args.cuda_device)
model = load_vqgan_model(args.vqgan_config, args.vqgan_checkpoint).to(device)
jit = True if "1.7.1" in torch.__version__ else False
perceptor = clip.load(args.clip_model, jit=jit)[0].eval().requires_grad_(False).to(device)

cut_size = perceptor.visual.input_resolution
f = 2 ** (model.decoder.num_resolutions - 1)
make_cutouts = MakeCutouts(cut_size, args.cutn, cut_pow=args.cut_pow)

toksX, toksY = args.size[0] // f, args.size[1] // f
e_dim = model.quantize.e_dim
n_toks = model.quantize.n_e
z_min = model.quantize.embedding.weight.min(dim=0).values[None, :, None, None]
z_max = model.quantize.embedding.weight.max(dim=0).values[None, :, None, None]
torch.manual_seed(0)
one_hot = F.one_hot(torch.randint(n_toks, [toksY * toksX], device=device), n_toks).float()
z = one_hot @ model.quantize.embedding.weight
z = z.view([-1, toksY, toksX, e_dim]).permute(0, 3, 1, 2)
z.requires_grad_(True)
opt = optim.Adam([z], lr=args.step_size)

normalize = transforms.Normalize(mean=[0.48145466, 0.4578275, 0.40821073],
                                 std=[0.26862954, 0.26130258, 0.27577711])

embed = perceptor.encode_text(clip.tokenize(args.prompts).to(device)).float()


def synth(z):
    z_q = vector_quantize(z.movedim(1, 3), model.quantize.embedding.weight).movedim(3, 1)
    return model.decode(z_q).add(1).div(2).clamp(0, 1)


for i in range(args.max_iterations):
    opt.zero_grad(set_to_none=True)
    out = synth(z)
    iii = perceptor.encode_image(normalize(make_cutouts(out))).float()
    dists = F.normalize(iii.unsqueeze(1), dim=2).sub(F.normalize(embed.unsqueeze(0), dim=2))
    loss = dists.norm(dim=2).div(2).arcsin().pow(2).mul(2).mean()
    loss.backward()
    opt.step()
    with torch.no_grad():
        z.copy_(z.maximum(z_min).minimum(z_max))

from PIL import Image  # noqa: E402

Image.fromarray((synth(z)[0].detach().permute(1, 2, 0).cpu().numpy() * 255).astype("uint8")).save(args.output)
