

class FailsWhenPruned(F1Module):
    """Trains as F1Module on the dense model; its training_step refuses a pruned network (a user's shape assert)."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.net.conv1.out_channels < self.net.conv2.in_channels or self.net.conv2.out_channels < self.net.head.in_features:
            raise AssertionError("never reached")
        if self.net.conv1.out_channels < 6 or self.net.conv2.out_channels < 6:
            raise ValueError("this module expects 6 channels")
        return super().training_step(batch, batch_idx)
