package container

import (
	"math/rand/v2"
	"regexp"
)

// ValidName is docker's rule for container names.
var ValidName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

var adjectives = []string{
	"admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome", "beautiful",
	"blissful", "bold", "boring", "brave", "busy", "charming", "clever", "compassionate",
	"competent", "condescending", "confident", "cool", "cranky", "crazy", "dazzling", "determined",
	"distracted", "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant", "eloquent",
	"epic", "exciting", "fervent", "festive", "flamboyant", "focused", "friendly", "frosty",
	"funny", "gallant", "gifted", "goofy", "gracious", "great", "happy", "hardcore",
	"heuristic", "hopeful", "hungry", "infallible", "inspiring", "intelligent", "interesting", "jolly",
	"jovial", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest",
	"musing", "mystifying", "naughty", "nervous", "nice", "nifty", "nostalgic", "objective",
	"optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless", "quirky", "quizzical",
	"recursing", "relaxed", "reverent", "romantic", "sad", "serene", "sharp", "silly",
	"sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty",
	"trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful",
	"xenodochial", "youthful", "zealous", "zen",
}

// Surnames of scientists and engineers, as in docker's generator.
var surnames = []string{
	"agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata", "austin",
	"babbage", "banach", "bardeen", "bartik", "bassi", "beaver", "bell", "benz",
	"bhabha", "bhaskara", "black", "blackburn", "blackwell", "bohr", "booth", "borg",
	"bose", "boyd", "brahmagupta", "brattain", "brown", "buck", "burnell", "cannon",
	"carson", "cartwright", "cerf", "chandrasekhar", "chaplygin", "chatelet", "chatterjee", "chebyshev",
	"cohen", "chaum", "clarke", "colden", "cori", "cray", "curie", "darwin",
	"davinci", "dewdney", "dhawan", "diffie", "dijkstra", "dirac", "driscoll", "dubinsky",
	"easley", "edison", "einstein", "elbakyan", "elgamal", "elion", "ellis", "engelbart",
	"euclid", "euler", "faraday", "feistel", "fermat", "fermi", "feynman", "franklin",
	"gagarin", "galileo", "galois", "ganguly", "gates", "gauss", "germain", "goldberg",
	"goldstine", "goldwasser", "golick", "goodall", "gould", "greider", "grothendieck", "haibt",
	"hamilton", "haslett", "hawking", "heisenberg", "hellman", "hermann", "herschel", "hertz",
	"heyrovsky", "hodgkin", "hofstadter", "hoover", "hopper", "hugle", "hypatia", "ishizaka",
	"jackson", "jang", "jemison", "jennings", "jepsen", "johnson", "joliot", "jones",
	"kalam", "kapitsa", "kare", "keldysh", "keller", "kepler", "khayyam", "khorana",
	"kilby", "kirch", "knuth", "kowalevski", "lalande", "lamarr", "lamport", "leakey",
	"leavitt", "lederberg", "lehmann", "lewin", "lichterman", "liskov", "lovelace", "lumiere",
	"mahavira", "margulis", "matsumoto", "maxwell", "mayer", "mccarthy", "mcclintock", "mclaren",
	"mclean", "mcnulty", "meitner", "mendel", "mendeleev", "meninsky", "merkle", "mestorf",
	"mirzakhani", "montalcini", "moore", "morse", "moser", "murdock", "napier", "nash",
	"neumann", "newton", "nightingale", "nobel", "noether", "northcutt", "noyce", "panini",
	"pare", "pascal", "pasteur", "payne", "perlman", "pike", "poincare", "poitras",
	"proskuriakova", "ptolemy", "raman", "ramanujan", "rhodes", "ride", "ritchie", "robinson",
	"roentgen", "rosalind", "rubin", "saha", "sammet", "sanderson", "satoshi", "shamir",
	"shannon", "shaw", "shirley", "shockley", "shtern", "sinoussi", "snyder", "solomon",
	"spence", "stonebraker", "sutherland", "swanson", "swartz", "swirles", "taussig", "tesla",
	"tharp", "thompson", "torvalds", "tu", "turing", "varahamihira", "vaughan", "villani",
	"visvesvaraya", "volhard", "wescoff", "wilbur", "wiles", "williams", "williamson", "wilson",
	"wing", "wozniak", "wright", "wu", "yalow", "yonath", "zhukovsky",
}

// GenerateName returns a random adjective_surname name like docker's. The
// caller retries on collision; after a few tries it should add a number.
func GenerateName(retry int) string {
	name := adjectives[rand.IntN(len(adjectives))] + "_" + surnames[rand.IntN(len(surnames))]
	if name == "boring_wozniak" { // Steve Wozniak is not boring; docker keeps this joke
		return GenerateName(retry)
	}
	if retry > 0 {
		name += string(rune('0' + rand.IntN(10)))
	}
	return name
}
