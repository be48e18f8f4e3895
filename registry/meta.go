package registry

// The annotations a checkpoint image carries. CRI-O finds a checkpoint
// image by its name annotation, Podman by its own; checkpointctl and
// newer tools read the org.criu set. ckptd writes all three so that each
// of them recognises the image, and accepts any of them on pull.
const (
	AnnotationName   = "io.kubernetes.cri-o.annotations.checkpoint.name"
	podmanName       = "io.podman.annotations.checkpoint.name"
	criuName         = "org.criu.checkpoint.container.name"
	AnnotationCkptID = "io.ckptd.checkpoint.id"
	// AnnotationEncrypted marks a checkpoint image whose layer is the
	// archive encrypted to its recipients ("age"): only a puller with an
	// identity reads it, and no other engine restores it.
	AnnotationEncrypted = "io.ckptd.checkpoint.encrypted"
)

// Meta describes a checkpoint for its image's annotations.
type Meta struct {
	Name            string // the checkpointed container's (or target's) name
	ID              string // ckptd's checkpoint ID
	RootfsImageName string // a container's image, empty for a process
	RootfsImageID   string
	Runtime         string // "runc"
	CRIUVersion     string
	Engine          string // "ckptd"
	EngineVersion   string
	Encrypted       bool // the layer is encrypted with age
}

func (m Meta) annotations() map[string]string {
	a := map[string]string{}
	set := func(v string, keys ...string) {
		if v == "" {
			return
		}
		for _, k := range keys {
			a[k] = v
		}
	}
	set(m.Name, AnnotationName, podmanName, criuName)
	set(m.ID, AnnotationCkptID)
	set(m.RootfsImageName,
		"io.kubernetes.cri-o.annotations.checkpoint.rootfsImageName",
		"io.podman.annotations.checkpoint.rootfsImageName",
		"io.podman.annotations.checkpoint.rawImageName",
		"org.criu.checkpoint.rootfsImageName")
	set(m.RootfsImageID,
		"io.kubernetes.cri-o.annotations.checkpoint.rootfsImageID",
		"io.podman.annotations.checkpoint.rootfsImageID",
		"org.criu.checkpoint.rootfsImageID")
	set(m.Runtime,
		"io.kubernetes.cri-o.annotations.checkpoint.runtime.name",
		"io.podman.annotations.checkpoint.runtime.name",
		"org.criu.checkpoint.runtime.name")
	set(m.CRIUVersion,
		"io.kubernetes.cri-o.annotations.checkpoint.criu.version",
		"io.podman.annotations.checkpoint.criu.version")
	set(m.Engine, "org.criu.checkpoint.engine")
	set(m.EngineVersion, "io.ckptd.version")
	if m.Encrypted {
		a[AnnotationEncrypted] = "age"
	}
	return a
}

// IsCheckpoint reports whether an image's annotations mark it as a
// checkpoint image of any of the engines ckptd knows.
func IsCheckpoint(annotations map[string]string) bool {
	for _, k := range []string{AnnotationName, podmanName, criuName} {
		if annotations[k] != "" {
			return true
		}
	}
	return false
}
