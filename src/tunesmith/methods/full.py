"""Full fine-tuning: every parameter trains."""


def apply_full(model, cfg):
    for param in model.parameters():
        param.requires_grad_(True)
    return model
